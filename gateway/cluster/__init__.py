"""Replicas: N engines behind one OpenAI endpoint, on Ray Serve (`sluicegate serve --replicas N`).

Nothing here imports Ray at import time except the modules that are only loaded once replicas
are asked for (router, replica, ingress, app, launch); settings, routing, keys, messages and
asgi_bridge are plain Python, so the single-machine server and the unit tests need no Ray.
"""
