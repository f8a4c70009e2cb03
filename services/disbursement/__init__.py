"""The disbursement service: program budgets, reservations, funding plans, payments and the
double-entry ledger that records every movement of money."""
