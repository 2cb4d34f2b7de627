"""I/O adapter: the API's alert rules copied into one PrometheusRule (monitoring.coreos.com/v1), so
a prometheus-operator whose ruleSelector matches its labels loads them with no file to mount.

The ConfigMap stays the one truth every replica watches (configmap.py); this object is a copy the
management API writes after each change of the rules, and whenever its watch sees the ConfigMap
change (a `kubectl edit`, another replica's write). Each copy is stamped with the resourceVersion of
the ConfigMap it was made from, so when two replicas race the older copy never replaces the newer
one. The ConfigMap owns it (ownerReferences): `helm uninstall` deletes the ConfigMap and the garbage
collector the copy. Where the CRD is not installed there is nothing to write: the copy is skipped
and the API answer says so (`storage.note`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .config import AlertRule, rule_file

log = logging.getLogger("conch.gateway.monitoring")

GROUP, VERSION, PLURAL, KIND = "monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"
SOURCE_VERSION = "conch.dev/config-map-resource-version"
_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Owner:
    """The ConfigMap the copy is made from (and owned by)."""

    name: str
    uid: str
    resource_version: str


@dataclass(frozen=True)
class Copied:
    prometheus_rule: str | None  # namespace/name when the copy holds these rules
    note: str | None = None  # why not, otherwise


def spec_of(rules: list[AlertRule]) -> dict[str, Any]:
    """Every rule in one group, as the rule file has them; no group at all without rules (a group
    must hold at least one rule for some Prometheus versions)."""
    return rule_file(rules) if rules else {"groups": []}


def _version(text: str | None) -> int:
    try:
        return int(text or -1)
    except ValueError:
        return -1  # not an etcd revision: anything we write is newer


@dataclass
class PrometheusRuleCopy:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def crd_installed(self, api) -> bool:
        """Discovery, not a read of the object: a 404 there would not tell a missing CRD from a
        missing object. Any authenticated caller may read discovery (system:discovery)."""
        from kubernetes.aio import client

        groups = await client.ApisApi(api).get_api_versions()
        return any(g.name == GROUP and any(v.version == VERSION for v in g.versions or []) for g in groups.groups)

    def body(self, rules: list[AlertRule], owner: Owner, current: dict[str, Any] | None) -> dict[str, Any]:
        meta = {k: v for k, v in ((current or {}).get("metadata") or {}).items() if k != "managedFields"}
        meta.update(name=self.name, namespace=self.namespace,
                    labels={**(meta.get("labels") or {}), **self.labels},
                    annotations={**(meta.get("annotations") or {}), SOURCE_VERSION: owner.resource_version},
                    # Not blockOwnerDeletion: that would need the finalizers of the ConfigMap too.
                    ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.name, "uid": owner.uid}])
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": meta, "spec": spec_of(rules)}

    async def write(self, api, rules: list[AlertRule], owner: Owner) -> Copied:
        """Make the copy hold `rules`, the content of ConfigMap version `owner.resource_version`."""
        from kubernetes.aio import client
        from kubernetes.aio.client.exceptions import ApiException

        try:
            if not await self.crd_installed(api):
                return Copied(None, f"the {KIND} CRD ({PLURAL}.{GROUP}) is not installed in this cluster: the rules "
                              "are kept in the ConfigMap only (mount its alert-rules.yml into Prometheus)")
            objects = client.CustomObjectsApi(api)
            for _ in range(_CONFLICT_RETRIES):
                try:
                    current = await objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                                         self.name)
                except ApiException as error:
                    if error.status != 404:
                        raise
                    current = None
                if current is not None and _version(current["metadata"].get("annotations", {}).get(SOURCE_VERSION)) \
                        >= _version(owner.resource_version):
                    return Copied(self.ref)  # this version, or a newer one another writer copied already
                body = self.body(rules, owner, current)
                try:
                    if current is None:
                        await objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
                    else:  # at the resourceVersion read: a concurrent writer makes this a 409, then read again
                        await objects.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                                        self.name, body)
                except ApiException as error:
                    if error.status == 409:
                        continue
                    raise
                return Copied(self.ref)
            return Copied(None, f"{KIND} {self.ref} kept changing under this write; the next change of the rules "
                          "copies them again")
        except ApiException as error:
            log.warning("writing %s %s failed: %s %s", KIND, self.ref, error.status, error.reason)
            if error.status == 403:
                return Copied(None, f"this ServiceAccount may not write {KIND} {self.ref} (the chart's management "
                              "Role grants it): the rules are kept in the ConfigMap only")
            return Copied(None, f"{KIND} {self.ref} could not be written ({error.status} {error.reason}): the rules "
                          "are kept in the ConfigMap; the next change of the rules copies them again")
        except Exception as error:  # the API server away: the ConfigMap, written already, is what counts
            log.warning("writing %s %s failed: %s", KIND, self.ref, error)
            return Copied(None, f"{KIND} {self.ref} could not be written ({error}): the rules are kept in the "
                          "ConfigMap; the next change of the rules copies them again")
