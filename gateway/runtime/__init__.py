"""The app's life: the services it holds, its typed state, its background tasks, what it opens
and closes, and the server and workers that run it.
"""
