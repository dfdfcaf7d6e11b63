"""Payments: merchant volumes and fraud alerts."""
