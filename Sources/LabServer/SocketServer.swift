import Foundation
public import LabCore
import NIOCore
import NIOPosix
import Synchronization
import LabAPI

/// Serves the JSON-RPC API on a Unix domain socket, one request per line. The socket file is
/// created owner-only (0600): on one machine, file permissions are the authentication.
///
/// Nothing a client does may delay an experiment: requests are answered on the server's own threads
/// (never Swift's cooperative pool, which the executor runs on), one at a time per connection, and a
/// connection is not read while its request is being answered or its replies are not being taken.
public final class SocketServer: Sendable {
    public let path: String
    private let group: MultiThreadedEventLoopGroup
    /// The blocking database reads run here.
    private let readers: NIOThreadPool
    private let channel: any Channel

    /// A request line may hold this many bytes, not counting its newline; a longer one is refused.
    public static let maximumLineBytes = 1 << 20

    /// Connections served at once; one more is told so and closed. Without a cap, idle clients can
    /// take every file descriptor the daemon has, and then its database and instruments fail.
    public static let maximumConnections = 256

    public init(path: String, dispatcher: RPCDispatcher, maximumConnections: Int = SocketServer.maximumConnections) throws {
        self.path = path
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        readers = NIOThreadPool(numberOfThreads: 2)
        readers.start()
        let readers = readers
        let freedMemory = FreedMemory()
        let open = OpenConnections()
        let bootstrap = ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.admit(below: maximumConnections) else {
                        return try channel.pipeline.syncOperations.addHandler(TooManyConnections(limit: maximumConnections))
                    }
                    channel.closeFuture.whenComplete { _ in open.release() }
                    try channel.pipeline.syncOperations.addHandler(
                        RPCConnection(dispatcher: dispatcher, readers: readers, maximumLineBytes: Self.maximumLineBytes,
                                      freedMemory: freedMemory))
                }
            }
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
            chmod(path, 0o600)
        } catch {
            try? readers.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            throw LabError(.transport, "cannot listen on \(path)", cause: error)
        }
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? readers.syncShutdownGracefully()
        unlink(path)
    }
}

/// How many connections are being served.
private final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts one more connection if fewer than `limit` are open.
    func admit(below limit: Int) -> Bool {
        if count.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        release()
        return false
    }

    func release() { count.wrappingSubtract(1, ordering: .relaxed) }
}

/// A connection over the limit: one error reply, as to a request, then closed. Nothing is read.
private final class TooManyConnections: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let limit: Int
    init(limit: Int) { self.limit = limit }

    func channelActive(context: ChannelHandlerContext) {
        var reply = RPCDispatcher.reply(.null, error: RPCError(
            code: -32000, message: "the server has too many connections (\(limit) at most); retry later"))
        reply.append(UInt8(ascii: "\n"))
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply))).whenComplete { _ in channel.close(promise: nil) }
    }
}
