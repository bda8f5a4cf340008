/* What the Windows TCP table shows of a server's connections, checked under wine.
 *
 * Built with mingw and run under wine by `bash .ci/windows tcptable`. The program opens a
 * listening socket on 127.0.0.1, connects to it, accepts, sends 16 bytes that the server's
 * side leaves unread, then reads GetExtendedTcpTable (iphlpapi, TCP_TABLE_OWNER_PID_ALL)
 * and prints the rows on its port. Exit code 0 if the accepted connection is listed.
 *
 * What wine 8 gave (2026-12-02): the table works; it lists the host's connections (wine
 * reads Linux's), the accepted connection ESTABLISHED, with owner pid 0 for the listening
 * and the accepted socket (the client's side has the right pid). A row holds state and
 * endpoints only: not the bytes waiting unread nor the time of the last data, which Linux's
 * sock_diag gives and the drain needs to tell an idle connection from a request on its way.
 * Windows keeps those in GetPerTcpConnectionEStats, whose collection needs administrator
 * rights to enable and which wine 8 does not implement (a call aborts the process).
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <iphlpapi.h>
#include <stdio.h>
#include <stdlib.h>

static const char *state_name(DWORD state) {
    switch (state) {
    case MIB_TCP_STATE_LISTEN: return "LISTEN";
    case MIB_TCP_STATE_ESTAB: return "ESTABLISHED";
    default: return "other";
    }
}

int main(void) {
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 2;
    SOCKET listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 8) ||
        getsockname(listener, (struct sockaddr *)&addr, &len)) {
        printf("tcptable: cannot listen on 127.0.0.1\n");
        return 2;
    }
    unsigned short port = ntohs(addr.sin_port);
    SOCKET client = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&addr, sizeof addr) != 0) return 2;
    SOCKET accepted = accept(listener, NULL, NULL);
    send(client, "GET / HTTP/1.1\r\n", 16, 0);
    Sleep(50);

    /* The table's size changes between calls: grow and try again while it does. */
    MIB_TCPTABLE_OWNER_PID *table = NULL;
    DWORD size = 0, rc = ERROR_INSUFFICIENT_BUFFER;
    for (int tries = 0; rc == ERROR_INSUFFICIENT_BUFFER && tries < 5; tries++) {
        free(table);
        size += 64 * 1024;
        table = malloc(size);
        rc = GetExtendedTcpTable(table, &size, FALSE, AF_INET, TCP_TABLE_OWNER_PID_ALL, 0);
    }
    if (rc != NO_ERROR) {
        printf("tcptable: GetExtendedTcpTable failed: %lu\n", rc);
        return 1;
    }
    printf("tcptable: GetExtendedTcpTable: %lu rows; this process: pid %lu, port %u\n",
           table->dwNumEntries, GetCurrentProcessId(), port);
    int found = 0;
    for (DWORD i = 0; i < table->dwNumEntries; i++) {
        MIB_TCPROW_OWNER_PID *row = &table->table[i];
        unsigned short local = ntohs((unsigned short)row->dwLocalPort);
        unsigned short remote = ntohs((unsigned short)row->dwRemotePort);
        if (local != port && remote != port) continue;
        const char *side = local != port ? "client" : row->dwState == MIB_TCP_STATE_LISTEN ? "listener" : "accepted";
        printf("tcptable: %-8s %-11s %u -> %u, owner pid %lu\n", side, state_name(row->dwState),
               local, remote, row->dwOwningPid);
        found |= local == port && row->dwState == MIB_TCP_STATE_ESTAB;
    }
    printf("tcptable: the accepted connection is %s; bytes unread and the time of the last data "
           "are not in this table\n", found ? "listed" : "NOT listed");
    closesocket(accepted);
    closesocket(client);
    closesocket(listener);
    return found ? 0 : 1;
}
