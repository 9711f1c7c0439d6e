"""A one-view Django project whose ``LOGGING`` setting installs the feedback handler."""
