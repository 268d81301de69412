"""The local dev stack: real Apache Kafka, real PostgreSQL, localstripe and the four services.

It backs ``payrail dev run`` (``make run``) and the test fixtures in ``tests/conftest.py``, so
what developers run by hand and what the suite runs against are the same processes, started the
same way, with nothing but Python, a JDK and Maven on the machine.
"""
