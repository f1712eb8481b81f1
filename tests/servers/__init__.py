"""Real servers on 127.0.0.1 that tests start, use and stop by PID (Swift all-in-one, moto, a fault proxy)."""
