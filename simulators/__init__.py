"""Device fleet simulator and replay of recorded series. Not built yet."""
