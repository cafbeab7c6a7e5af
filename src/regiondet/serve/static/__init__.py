"""The web page: plain HTML, CSS and JavaScript served by the package (no build step, no CDN)."""
