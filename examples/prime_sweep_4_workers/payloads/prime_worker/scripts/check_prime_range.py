"""Check every integer of [start, end] for primality by trial division.

Usage: check_prime_range.py <worker_id> <start> <end>
Prints one JSON object (plain data, no structured-stdout keys).
"""

from __future__ import annotations

import json
import sys


def is_prime(number: int) -> bool:
    if number < 2:
        return False
    if number < 4:
        return True
    if number % 2 == 0:
        return False
    divisor = 3
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 2
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: check_prime_range.py <worker_id> <start> <end>", file=sys.stderr)
        return 2
    worker_id, start, end = argv[1], int(argv[2]), int(argv[3])
    primes = [number for number in range(start, end + 1) if is_prime(number)]
    print(
        json.dumps(
            {
                "worker_id": worker_id,
                "range_start": start,
                "range_end": end,
                "checked_numbers": max(end - start + 1, 0),
                "prime_count": len(primes),
                "primes": primes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
