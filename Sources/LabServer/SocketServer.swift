import Foundation
public import LabCore
import NIOCore
import NIOPosix

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

    public init(path: String, dispatcher: RPCDispatcher) throws {
        self.path = path
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        readers = NIOThreadPool(numberOfThreads: 2)
        readers.start()
        let readers = readers
        let freedMemory = FreedMemory()
        let bootstrap = ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
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
