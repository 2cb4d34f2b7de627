"""The one way the gateway gets credentials for the Kubernetes API: its pod's ServiceAccount in a
cluster, else the kubeconfig (a developer's machine, the tests). Imported lazily by the parts
that need it, so `make up` never loads the Kubernetes client."""

from __future__ import annotations


async def api_client():
    """A new `kubernetes.aio` ApiClient; raises kubernetes' ConfigException (or OSError) when
    neither credential exists. The caller closes it."""
    from kubernetes.aio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()
