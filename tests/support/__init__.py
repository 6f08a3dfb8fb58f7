"""Helpers the tests share: servers, processes, clients, errors, records. No test lives here."""
