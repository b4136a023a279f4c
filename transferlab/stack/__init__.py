"""The team's stack on one machine: PostgreSQL, an S3-compatible object store (SeaweedFS), MLflow's tracking server
with its basic-auth app, and Prefect's server with a process work pool and a worker, each bound to 127.0.0.1.

`transferlab stack up | status | down | env`: the services run from a folder of their own (`layout.StackLayout`),
their credentials are generated once into a file only its owner reads (`secrets.py`) and never printed.
"""
