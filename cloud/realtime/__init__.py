"""Realtime fan-out to viewers: gifts and motor progress over Socket.IO and plain WebSocket."""
