# The BEAM side of examples/serve_group.c, as an Elixir user writes it: no Mix project, no hex
# dependencies, only :pg and :erpc from OTP.
#
#   elixir --sname app --cookie secret examples/elixir/kv_client.exs [MEMBERS] [CALLS]
#   build/examples/serve_group --sname kv1 --cookie secret --connect app@$(hostname -s)
#   build/examples/serve_group --sname kv2 --cookie secret --connect app@$(hostname -s)
#
# It starts the rpc_load_balancer pg scope on this node, waits for MEMBERS (default 2) C members
# in group :kv, routes CALLS (default 40) puts and gets over them by key (phash2 of the key over
# the members, so a key's get goes where its put went), prints the spread, asks a member for a
# key nobody put and prints the error as Elixir shows it, then waits for the members to leave
# (stop them with SIGTERM) and exits 0. Anything unexpected exits 1.
defmodule KvClient do
  @scope :rpc_load_balancer
  @group :kv

  def main(args) do
    {members, calls} =
      case args do
        [m, c | _] -> {String.to_integer(m), String.to_integer(c)}
        [m] -> {String.to_integer(m), 40}
        [] -> {2, 40}
      end

    unless Node.alive?(), do: fail("start me with --sname or --name")
    {:ok, _} = :pg.start_link(@scope)
    IO.puts("#{node()}: scope #{inspect(@scope)} started, waiting for #{members} members of #{inspect(@group)}")

    pids = wait_for(fn -> length(:pg.get_members(@scope, @group)) >= members end, 30_000, "members")
    nodes = Enum.map(pids, &node/1) |> Enum.uniq() |> Enum.sort()
    IO.puts("members: #{inspect(nodes)}")

    # identity, as any member of a mixed group answers it
    for n <- nodes, do: ^n = :erpc.call(n, :erlang, :node, [])

    # puts and gets routed by key: the member at phash2(key, count)
    spread =
      Enum.reduce(1..calls, %{}, fn i, acc ->
        key = "user:#{i}"
        target = Enum.at(nodes, :erlang.phash2(key, length(nodes)))
        :ok = :erpc.call(target, :kv, :put, [key, %{id: i, name: "user #{i}"}])
        %{id: ^i} = :erpc.call(target, :kv, :get, [key])
        Map.update(acc, target, 1, &(&1 + 1))
      end)

    IO.puts("spread of #{calls} keys (a put and a get each):")
    for {n, count} <- Enum.sort(spread), do: IO.puts("  #{n} #{count}")
    if map_size(spread) != length(nodes), do: fail("not every member got keys: #{inspect(spread)}")

    # a key nobody put: the C member raises error:{badkey, Key}, as Map.fetch!/2 would
    target = hd(nodes)

    try do
      :erpc.call(target, :kv, :get, ["nobody"])
      fail("a missing key gave a value")
    rescue
      e in ErlangError ->
        IO.puts("missing key on #{target}:")
        IO.puts("  " <> Exception.format_banner(:error, e))
        case e.original do
          {:exception, {:badkey, "nobody"}, [{:kv, :get, ["nobody"], _} | _]} -> :ok
          other -> fail("unexpected error #{inspect(other)}")
        end
    end

    IO.puts("waiting for the members to leave (SIGTERM them)")
    wait_for(fn -> :pg.get_members(@scope, @group) == [] end, 30_000, "members to leave")
    IO.puts("all members left; done")
  end

  defp wait_for(fun, ms, what) do
    deadline = System.monotonic_time(:millisecond) + ms
    wait_loop(fun, deadline, what)
  end

  defp wait_loop(fun, deadline, what) do
    case fun.() do
      false ->
        if System.monotonic_time(:millisecond) > deadline, do: fail("timed out waiting for #{what}")
        Process.sleep(50)
        wait_loop(fun, deadline, what)

      true ->
        :pg.get_members(@scope, @group)
    end
  end

  defp fail(why) do
    IO.puts("kv_client: #{why}")
    System.halt(1)
  end
end

KvClient.main(System.argv())
