"""The review service: the departments' review tasks, their claims and decisions.

It owns the review database (review_task plus its outbox); claims and decisions reach the grant
workflow as Temporal Updates before they are recorded, so the workflow stays the judge of them.
"""
