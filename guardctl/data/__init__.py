"""Data files shipped with guardctl (resource table, kubectl flag table)."""
