"""For operators: metrics, the HTTP endpoints (health, catalogue page), logs and `status`.
"""
