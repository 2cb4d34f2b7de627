"""A stand-in for the operator's Kube in unit tests of pure-ish steps: records every call, reads
find only what it was given."""

from __future__ import annotations


class FakeKube:
    def __init__(self, objects: dict | None = None):
        self.objects = objects or {}
        self.calls: list[tuple] = []

    def get(self, kind, namespace, name):
        self.calls.append(("get", kind, name))
        return self.objects.get((kind, name))

    def list(self, kind, namespace, selector=None):
        self.calls.append(("list", kind))
        return []

    def __getattr__(self, verb):  # apply, create, create_or_apply, patch, delete, merge_patch, patch_status
        def call(*args, **kwargs):
            self.calls.append((verb, *args, kwargs) if kwargs else (verb, *args))
            return {"metadata": {"uid": "new"}}
        return call
