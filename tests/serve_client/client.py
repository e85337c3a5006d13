"""Drives every modstate tool through `modstate serve` with the Python MCP SDK's Streamable
HTTP client; prints one JSON object of what came back. Arguments: URL TOKEN NAMESPACE."""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def result(r):
    return {"is_error": bool(r.is_error), "structured": r.structured_content,
            "text": [c.text for c in r.content if getattr(c, "type", "") == "text"]}


async def main(url, token, namespace):
    headers = {"Modstate-Namespace": namespace}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    out = {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                init = await session.initialize()
                out["protocol"] = getattr(init, "protocolVersion", None) or getattr(init, "protocol_version", None)
                tools = await session.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                added = await session.call_tool("add_memory", {"text": "the deploy runs on fridays", "category": "fact", "tags": ["ops"]})
                out["add"] = result(added)
                mid = added.structured_content["id"]
                out["search"] = result(await session.call_tool("search_memories", {"query": "deploy"}))
                out["get"] = result(await session.call_tool("get_memories", {"limit": 5}))
                out["update"] = result(await session.call_tool("update_memory", {"id": mid, "text": "the deploy runs on thursdays", "expect_version": added.structured_content["version"]}))
                out["stale"] = result(await session.call_tool("update_memory", {"id": mid, "text": "x", "expect_version": 1}))
                out["history"] = result(await session.call_tool("memory_history", {"id": mid}))
                await session.call_tool("add_memory", {"text": "a second memory to page through"})
                first = await session.call_tool("get_memories", {"limit": 1})
                second = await session.call_tool("get_memories", {"limit": 1, "cursor": first.structured_content["next_cursor"]})
                out["pages"] = [result(first), result(second)]
                out["delete"] = result(await session.call_tool("delete_memory", {"id": mid}))
                out["module"] = result(await session.call_tool("get_module_state", {"digest": "sha256:" + "0" * 64}))
                out["bad"] = result(await session.call_tool("get_memories", {"limit": "ten"}))
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
