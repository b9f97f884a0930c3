from dockyard_swarm.provider import SERVICES


def test_services_serve_the_manager_role():
    assert SERVICES and all(info.roles == ("manager",) for info in SERVICES)
