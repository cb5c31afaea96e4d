"""The 跨域通办 case: lifecycle state machine, service functions, federation messages, API."""
