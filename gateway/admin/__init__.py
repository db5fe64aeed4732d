"""The admin surfaces: the admin API (`api`), its guard against guessing and slow bodies
(`guard`), and the teams and keys it manages (`accounts`).
"""
