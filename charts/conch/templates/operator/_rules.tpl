{{/* The operator's namespaced permissions: in its ClusterRole (-A) or in a Role per watched namespace. */}}
{{- define "conch.operator.namespacedRules" -}}
# Models: kopf watches them; a reconcile reads one when the watch has not delivered it yet.
- apiGroups: [conch.dev]
  resources: [models]
  verbs: [get, list, watch]
# The operator is the only writer of Model status (merge patch of the status subresource).
- apiGroups: [conch.dev]
  resources: [models/status]
  verbs: [patch]
# Owned Triton Deployments: kopf watches them (labelled conch.dev/model); created, server-side
# applied, pruned; read once per Model after a restart.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The other owned kinds (kube.OWNED_KINDS): created, server-side applied, listed and deleted when
# pruning. Jobs are owned too (the TensorRT-LLM engine build).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, create, patch, delete]
# kopf watches the Triton pods, only to report why they cannot be scheduled.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# A Model's source may name a PersistentVolumeClaim or a token Secret: the operator checks that
# it exists (get), to report SourceNotFound. No list: it never enumerates them.
- apiGroups: [""]
  resources: [persistentvolumeclaims, secrets]
  verbs: [get]
# kopf posts Events about failing handlers (POST only: kopf never patches events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
