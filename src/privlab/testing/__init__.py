"""Public reference implementations (slow, obviously correct) used to test privlab's fast paths."""
