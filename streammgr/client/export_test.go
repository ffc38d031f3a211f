package client

// InFlight counts the calls waiting for a response on c's connection.
func InFlight(c *Client) int {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return 0
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return len(cn.waiting)
}
