"""The fixtures themselves talk to real servers."""

import asyncpg


def test_moto_server_answers_sqs(sqs, make_queue) -> None:  # type: ignore[no-untyped-def]
    url, dlq = make_queue("fixture")
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["hello"]
    assert dlq is not None


async def test_store_url_gives_each_backend(store_url: str) -> None:
    if store_url.startswith("postgresql"):
        conn = await asyncpg.connect(store_url)
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()
    else:
        assert store_url.startswith("sqlite:///")
