"""Plugins exactly as contract version 6 taught them (module functions answering per-modality hooks, and
``mmgan new-plugin``'s loss term of that version): they must keep working unchanged."""
