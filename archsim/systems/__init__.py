"""Systems: devices, links and topologies, serving and multi-device attention models, and the papers' reproductions."""
