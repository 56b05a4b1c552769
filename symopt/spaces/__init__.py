"""Search spaces: each produces symopt Graphs (see DESIGN.md)."""
