"""The operator's door to the API: what it sends, and which answers count as done."""

from __future__ import annotations

from conch_operator.kube import Kube, KubeError


def test_delete_names_the_uid_and_a_conflict_is_done(monkeypatch):
    kube = Kube()
    sent = []

    def request(method, path, query=None, *, body=None, content_type=""):
        sent.append((method, path, body))
        raise KubeError(409, "Precondition failed: UID in precondition: job-7, UID in object meta: job-8")

    monkeypatch.setattr(kube, "_request", request)
    kube.delete("Job", "ns", "conch-engine-x", uid="job-7")  # another Model's new attempt: left alone, no error
    assert sent == [("DELETE", "/apis/batch/v1/namespaces/ns/jobs/conch-engine-x",
                     {"propagationPolicy": "Background", "preconditions": {"uid": "job-7"}})]
    kube.close()
