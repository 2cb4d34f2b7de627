"""Seed 003's management API over Model resources (issue 16): protocol types, the pure mapping
seed-003 body ⇄ Model spec, and (to come) the service, routes and cluster/local backends."""
