"""What arrives: the connection guard, the endpoints and their paths, the request body, its
parameters, the caller's key, and the images it carries.
"""
