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
# pruning.
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, create, patch, delete]
# The record of built TensorRT-LLM engines (one ConfigMap per namespace, merge-patched per key):
# read by name only, so no other ConfigMap can be read.
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [conch-engines]
  verbs: [get]
# TensorRT-LLM engine build Jobs: watched by kopf, read by name, created, deleted to retry a failed
# build; listed and patched as an owned kind.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# kopf watches the Triton pods (why they cannot be scheduled) and the engine builders' pods (build
# progress); a reconcile lists a build Job's pods.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# A Model's source may name a PersistentVolumeClaim or a token Secret: the operator checks that
# it exists (get), to report SourceNotFound. No list: it never enumerates them. The engine cache
# claim is created when missing (and never deleted: it is shared and keeps the engines).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# kopf posts Events about failing handlers (POST only: kopf never patches events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
