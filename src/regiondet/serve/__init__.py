"""`regiondet serve`: the HTTP service and its web page."""
