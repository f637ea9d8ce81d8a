"""Mappings: how a cascade runs on an architecture (fusion groups, loop nests, bindings), their loader and mapper."""
