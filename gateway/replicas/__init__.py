"""What several replicas share through Redis: the one Redis link, and the changes (keys,
prices) each tells the others.
"""
