"""Clients of the servers every stage talks to, configured from the settings in one place."""
