"""Tests that run real FIX engines (QuickFIX) and sidecars (stunnel) as subprocesses."""
