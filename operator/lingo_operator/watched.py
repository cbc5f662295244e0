"""What the operator's handlers watch: StreamingSessions, and the worker pods it makes."""

from lingo_api import resources as r

SESSIONS = dict(group=r.GROUP, version=r.VERSION, plural=r.SESSION_PLURAL)
WORKER_PODS = dict(labels={r.LABEL_MANAGED_BY: r.MANAGED_BY, r.LABEL_COMPONENT: r.WORKER_COMPONENT})
