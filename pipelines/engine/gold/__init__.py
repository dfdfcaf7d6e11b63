"""Gold writers shared by every domain: upsert and rebuild outputs, sessions, worker time."""
