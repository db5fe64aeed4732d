"""A request's way through: the Flow, the ordered stages and the ending, the upstream call and
its relay, and the one writer to the client.
"""
