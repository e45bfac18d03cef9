"""The read layer's reports: the story, lineage, diff, history and the HTML page."""
