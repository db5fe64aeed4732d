"""Accounting: what a request may cost before it goes upstream (`stages`: estimate, rate limits,
the budget hold), what it is charged once it ends (`settle`: the result computed once), and the
one ledger row that commits it (`commit`); the journal that keeps rows the store could not take,
and the budgets' and limits' rules.
"""
