"""The REST facade: POST /session-storage/sessions and friends, over the StreamingSession CRD."""
