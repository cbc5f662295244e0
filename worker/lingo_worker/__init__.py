"""The per-session translation worker: LiveKit participant, ASR -> MT -> TTS, control WebSocket."""
