"""What operators read: the health, readiness and metrics routes (`routes`), the log lines
(`logs`), and the OpenAPI description (`openapi`).
"""
