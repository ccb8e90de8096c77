"""Load for the example apps: most users browse /products back to back, a few ask for a slow
report (/slow, a 50 ms query), the shape of the built-in `mixed` scenario.

    gevent-probe run --app shop_app:app --chdir examples --locustfile examples/app_locustfile.py
"""

import random

from locust import FastHttpUser, constant, task


class Browser(FastHttpUser):
    weight = 9
    wait_time = constant(0)

    @task
    def products(self) -> None:
        self.client.get(f"/products?category={random.randrange(10)}&page="
                        f"{random.randrange(9)}", name="products")


class Reporter(FastHttpUser):
    weight = 1
    wait_time = constant(0.2)

    @task
    def slow(self) -> None:
        self.client.get("/slow?ms=50", name="slow")
