"""The web console: static files (vendored third-party ones included) and the routes serving them at /ui/."""
