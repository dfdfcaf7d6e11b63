"""E-commerce clickstream: revenue, activity and sessions."""
