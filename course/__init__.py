"""Classroom material that uses effnet_edu: graded assignments (``python -m course build|grade``) and experiments."""
