// @tus/server with @tus/file-store (as pinned in package.json) on 127.0.0.1, a free port.
//   node tus_node_server.mjs DIRECTORY
// Prints {"port": N, "extensions": "..."} once listening; serves /files/ until killed.
import http from 'node:http'
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'

const [directory] = process.argv.slice(2)
const datastore = new FileStore({ directory })
const tus = new Server({ path: '/files', datastore })
const server = http.createServer((req, res) => tus.handle(req, res))
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  process.stdout.write(JSON.stringify({ port, extensions: datastore.extensions.join(',') }) + '\n')
})
