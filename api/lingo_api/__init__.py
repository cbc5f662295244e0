"""Types and names shared by the operator, the REST facade and the worker (the `api/` of the operator)."""
