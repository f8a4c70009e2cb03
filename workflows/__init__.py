"""Grantflow's Temporal side: the grant and funding-plan workflows, their activities, the program
rules they apply, the worker, and the intake consumer that starts and signals workflows."""
